"""Turning a graded run into a report: figures, grader validity, verdicts, comparisons, charts and rendering."""
