"""Group formula cells that compute the same way, and order the groups by dependency.

Cells share a group when their formulas have the same shape once every reference is
replaced by a slot: a shared formula's cells (Excel's own grouping), or plain formulas
that differ only in where they point. Each slot then holds one rectangle per cell, so a
group is evaluated as one NumPy operation over gathered arrays.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from ...a1 import cell_name
from .parser import Binary, Call, Err, FormulaError, Name, Ref, Unary, allow_deep_formulas, parse, parse_ref
from .reader import FileError, Workbook


@dataclass(frozen=True)
class Slot:
    index: int


@dataclass(frozen=True)
class Apply:
    """A function call bound to its implementation when the formula is compiled."""

    name: str
    implementation: Callable
    args: tuple


@dataclass
class Group:
    sheet: str
    rows: np.ndarray  # int64 [n], 0-based cells computed by this group
    cols: np.ndarray
    tree: object  # the formula with references replaced by Slots
    slot_sheets: list[str]
    slot_shapes: list[tuple[int, int]]
    slot_r0: list[np.ndarray]  # per slot: top-left row of its rectangle, per cell
    slot_c0: list[np.ndarray]
    array: bool = False  # an array formula: ranges stay arrays everywhere
    source: str = ""  # formula text of the first cell, for messages
    shared: bool = False  # one shared formula's cells (else plain formulas alike in shape)
    extent: tuple[int, int] = (1, 1)  # an array formula's range from each of its cells (rows, cols)

    def __len__(self) -> int:
        return len(self.rows)

    def covered(self) -> tuple[np.ndarray, np.ndarray]:
        """Every cell the group computes (an array formula's whole range), 0-based."""
        h, w = self.extent
        if (h, w) == (1, 1):
            return self.rows, self.cols
        dr, dc = np.mgrid[0:h, 0:w]
        return ((self.rows[:, None] + dr.ravel()).ravel(), (self.cols[:, None] + dc.ravel()).ravel())

    def first_cell(self) -> str:
        return f"{self.sheet}!{cell_name(int(self.rows[0]) + 1, int(self.cols[0]) + 1)}"

    def select(self, cells: np.ndarray) -> "Group":
        return Group(self.sheet, self.rows[cells], self.cols[cells], self.tree, self.slot_sheets, self.slot_shapes,
                     [r[cells] for r in self.slot_r0], [c[cells] for c in self.slot_c0], self.array, self.source,
                     self.shared, self.extent)

    def split(self) -> list["Group"]:
        return [self.select(np.arange(i, i + 1)) for i in range(len(self))]

    def split_by(self, key: np.ndarray) -> list["Group"]:
        """One group per distinct value of key (a row or column per cell)."""
        order = np.argsort(key, kind="stable")
        bounds = np.flatnonzero(np.diff(key[order])) + 1
        return [self.select(cells) for cells in np.split(order, bounds)]


class CompileError(FileError):
    pass


def shorten(formula: str, limit: int = 120) -> str:
    """A formula as shown in a one-line message."""
    return formula if len(formula) <= limit else formula[:limit - 3] + "..."


def _templatize(tree, own_sheet: str, sheets: dict[str, str], functions: Mapping[str, Callable],
                names: dict[str, str]) -> tuple[object, list[tuple[str, Ref]]]:
    """Replace references by Slots; resolve defined names and sheet names (both keyed
    upper-case: Excel ignores their case); bind every call to its implementation."""
    refs: list[tuple[str, Ref]] = []

    def walk(node):
        if isinstance(node, Ref):
            sheet = own_sheet if node.sheet is None else sheets.get(node.sheet.upper())
            if sheet is None:
                return Err("#REF!")
            refs.append((sheet, node))
            return Slot(len(refs) - 1)
        if isinstance(node, Name):
            target = names.get(node.name.upper())
            ref = parse_ref(target.lstrip("=")) if target else None
            sheet = sheets.get(ref.sheet.upper()) if ref is not None and ref.sheet is not None else None
            if sheet is None:
                return Err("#NAME?")
            refs.append((sheet, ref))
            return Slot(len(refs) - 1)
        if isinstance(node, Unary):
            return Unary(node.op, walk(node.arg))
        if isinstance(node, Binary):
            return Binary(node.op, walk(node.left), walk(node.right))
        if isinstance(node, Call):
            if node.name not in functions:
                raise FormulaError(f"function {node.name} is not supported by this engine")
            return Apply(node.name, functions[node.name], tuple(walk(a) for a in node.args))
        return node

    return walk(tree), refs


@dataclass
class _Acc:
    rows: list[int] = field(default_factory=list)
    cols: list[int] = field(default_factory=list)
    r0: list[list[int]] = field(default_factory=list)
    c0: list[list[int]] = field(default_factory=list)
    source: str = ""


Problems = Callable[[str], None]  # told of each formula that cannot be computed, which then shows #VALUE!


def compile_groups(wb: Workbook, functions: Mapping[str, Callable], problems: Problems | None = None) -> list[Group]:
    """All formula cells of the workbook as groups (not yet ordered); `functions` are the
    implementations by name (a call to any other is an error). `problems`: a formula that
    cannot be compiled is reported there and its cells show #VALUE! (as a spreadsheet
    shows an error in the cell); without it, it raises CompileError."""
    allow_deep_formulas()
    groups: list[Group] = []
    names = {k.upper(): v for k, v in wb.names.items()}
    sheets = {name.upper(): name for name in wb.sheets}
    for sheet in wb.sheets.values():
        for si, shared in sheet.shared.items():
            where = f"{sheet.name}!{cell_name(shared.row + 1, shared.col + 1)}"
            rows, cols = np.asarray(shared.rows, np.int64), np.asarray(shared.cols, np.int64)
            try:
                tree, refs = _templatize(parse(shared.text), sheet.name, sheets, functions, names)
                groups.extend(_shared_groups(sheet.name, tree, refs, rows, cols, shared.row, shared.col,
                                             shared.text, where))
            except (FormulaError, CompileError) as e:
                message = (str(e) if isinstance(e, CompileError)
                           else f"cell {where}: {e} (formula ={shorten(shared.text)})")
                if problems is None:
                    raise CompileError(message) from None
                problems(message)
                groups.append(error_group(sheet.name, rows, cols, shared.text))
        plain: dict[tuple, _Acc] = defaultdict(_Acc)
        cache: dict[str, tuple[object, list]] = {}
        cells = [(r, c, t, None) for r, c, t in sheet.formulas] + \
            [(r, c, t, sheet.array_extents.get((r, c), (1, 1))) for r, c, t in sheet.array_formulas]
        for row, col, text, array in cells:  # array: None, or an array formula's extent
            if text not in cache:
                try:
                    cache[text] = _templatize(parse(text), sheet.name, sheets, functions, names)
                except FormulaError as e:
                    message = f"cell {sheet.name}!{cell_name(row + 1, col + 1)}: {e} (formula ={shorten(text)})"
                    if problems is None:
                        raise CompileError(message) from None
                    problems(message)
                    cache[text] = (Err("#VALUE!"), [])
            tree, refs = cache[text]
            key = (tree, tuple((s, r.shape) for s, r in refs), array)
            acc = plain[key]
            if not acc.rows:
                acc.source = text
                acc.r0 = [[] for _ in refs]
                acc.c0 = [[] for _ in refs]
            acc.rows.append(row)
            acc.cols.append(col)
            for k, (_, ref) in enumerate(refs):
                acc.r0[k].append(ref.r0)
                acc.c0[k].append(ref.c0)
        for (tree, slot_info, array), acc in plain.items():
            groups.append(Group(sheet.name, np.asarray(acc.rows, np.int64), np.asarray(acc.cols, np.int64), tree,
                                [s for s, _ in slot_info], [shape for _, shape in slot_info],
                                [np.asarray(r, np.int64) for r in acc.r0], [np.asarray(c, np.int64) for c in acc.c0],
                                array=array is not None, source=acc.source, extent=array or (1, 1)))
    return groups


def error_group(sheet: str, rows: np.ndarray, cols: np.ndarray, text: str, extent: tuple[int, int] = (1, 1)) -> Group:
    """Cells that show #VALUE!: their formula could not be computed (over an array's whole range)."""
    return Group(sheet, rows, cols, Err("#VALUE!"), [], [], [], [], array=extent != (1, 1), source=text,
                 extent=extent)


def _shared_groups(sheet: str, tree, refs, rows, cols, mrow, mcol, text, where) -> list[Group]:
    """A shared formula's cells, each reference moved by the cell's offset from the master
    where it is relative; split where a mixed reference makes rectangles differ in shape."""
    dr, dc = rows - mrow, cols - mcol
    r0s, c0s, hs, ws = [], [], [], []
    for _, ref in refs:
        r0 = ref.r0 + (0 if ref.abs_r0 else dr)
        c0 = ref.c0 + (0 if ref.abs_c0 else dc)
        r1 = ref.r1 + (0 if ref.abs_r1 else dr)
        c1 = ref.c1 + (0 if ref.abs_c1 else dc)
        if np.any(np.minimum(r0, r1) < 0) or np.any(np.minimum(c0, c1) < 0):
            raise CompileError(f"cell {where}: a shared formula moves a reference off the sheet (#REF!)")
        r0s.append(np.minimum(r0, r1) + np.zeros_like(rows))
        c0s.append(np.minimum(c0, c1) + np.zeros_like(rows))
        hs.append(np.abs(r1 - r0) + 1 + np.zeros_like(rows))
        ws.append(np.abs(c1 - c0) + 1 + np.zeros_like(rows))
    if not refs:
        return [Group(sheet, rows, cols, tree, [], [], [], [], source=text, shared=True)]
    shape_key = np.stack(hs + ws, axis=1)
    if (shape_key == shape_key[0]).all():  # the usual case, and sorting big groups is slow
        keys, inverse = shape_key[:1], np.zeros(len(rows), np.int64)
    else:
        keys, inverse = np.unique(shape_key, axis=0, return_inverse=True)
    out = []
    for k, key in enumerate(keys):
        sel = np.flatnonzero(inverse.ravel() == k)
        out.append(Group(sheet, rows[sel], cols[sel], tree, [s for s, _ in refs],
                         [(int(key[i]), int(key[len(refs) + i])) for i in range(len(refs))],
                         [r[sel] for r in r0s], [c[sel] for c in c0s], source=text, shared=True))
    return out


# -- ordering -----------------------------------------------------------------------------
def order_groups(groups: list[Group], problems: Problems | None = None) -> list[Group]:
    """Groups in an order where each comes after every group it reads from.

    Dependencies are found by bounding boxes. Groups caught in a cycle of boxes are split
    by position first: shared and array formulas (and plain ones down a column) into their
    rows, other per-cell formulas into their columns (a book's steps hold positions in rows,
    its transposed keys in columns), but
    only where the cells read different formula cells; a generated token's position then
    reads only earlier ones. Groups still caught are split into single cells, whose boxes
    are exact, and a cycle that remains is a real circular reference: CompileError, or
    with `problems` reported there, its cells showing #VALUE! (and what reads them)."""
    order, cyclic = _toposort(groups)
    formula_sheets = {g.sheet for g in groups}
    for split in (lambda g: _split_by_position(g, formula_sheets), Group.split):
        if not cyclic:
            return order
        groups = [part for g in groups for part in (split(g) if id(g) in cyclic else [g])]
        order, cyclic = _toposort(groups)
    if cyclic:
        g = next(g for g in groups if id(g) in cyclic)
        message = f"circular reference: cell {g.first_cell()} depends on itself (formula ={shorten(g.source)})"
        if problems is None:
            raise CompileError(message)
        problems(message)
        groups = [error_group(g.sheet, g.rows, g.cols, g.source, g.extent) if id(g) in cyclic else g for g in groups]
        order, cyclic = _toposort(groups)
    return order


def _split_by_position(g: Group, formula_sheets: set[str]) -> list[Group]:
    moving = any(sheet in formula_sheets and (np.ptp(r0) > 0 or np.ptp(c0) > 0)
                 for sheet, r0, c0 in zip(g.slot_sheets, g.slot_r0, g.slot_c0))
    if len(g) == 1 or not moving:  # every cell reads the same formula cells: splitting cannot help
        return [g]
    by_rows = g.shared or g.array or np.ptp(g.cols) == 0  # plain formulas down one column: rows too
    return g.split_by(g.rows if by_rows else g.cols)


def _toposort(groups: list[Group]) -> tuple[list[Group], set[int]]:
    boxes: dict[str, tuple[np.ndarray, ...]] = {}  # sheet -> (first rows, last rows, first cols, last cols, groups)
    by_sheet: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_sheet[g.sheet].append(i)
    for sheet, members in by_sheet.items():
        gs = [groups[i] for i in members]
        boxes[sheet] = (np.array([g.rows.min() for g in gs]), np.array([g.rows.max() + g.extent[0] - 1 for g in gs]),
                        np.array([g.cols.min() for g in gs]), np.array([g.cols.max() + g.extent[1] - 1 for g in gs]),
                        np.array(members))
    deps: list[set[int]] = []
    for g in groups:
        d: set[int] = set()
        for sheet, (h, w), r0, c0 in zip(g.slot_sheets, g.slot_shapes, g.slot_r0, g.slot_c0):
            if sheet not in boxes:
                continue
            p0, p1, q0, q1, members = boxes[sheet]
            a0, a1, b0, b1 = r0.min(), r0.max() + h - 1, c0.min(), c0.max() + w - 1
            d.update(members[(p0 <= a1) & (a0 <= p1) & (q0 <= b1) & (b0 <= q1)].tolist())
        deps.append(d)
    sccs = _tarjan(len(groups), deps)
    cyclic: set[int] = set()
    order = []
    for comp in sccs:  # Tarjan yields components dependencies-first
        if len(comp) > 1 or comp[0] in deps[comp[0]]:
            cyclic.update(id(groups[i]) for i in comp)
        order.extend(groups[i] for i in comp)
    return order, cyclic


def _tarjan(n: int, deps: list[set[int]]) -> list[list[int]]:
    """Strongly connected components (iterative), each after the components it depends on."""
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    comps: list[list[int]] = []
    counter = 0
    for root in range(n):
        if index[root] >= 0:
            continue
        work = [(root, iter(deps[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if index[w] < 0:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = True
                    work.append((w, iter(deps[w])))
                    advanced = True
                    break
                if on_stack[w]:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    comp.append(w)
                    if w == v:
                        break
                comps.append(comp)
    return comps
