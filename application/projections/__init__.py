"""Read models as pure folds: (current row, event, position) -> new row. No SQL here."""
