"""Grading stored replies: criteria applied to rows, judge calls, grader calibration and human review."""
