"""Course analyses: experiment runner, model cost tables, error analysis, reports."""
