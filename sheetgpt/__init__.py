"""sheetgpt: GPT-2 as a spreadsheet, every weight a cell and every step a formula."""

__version__ = "0.1.0"
