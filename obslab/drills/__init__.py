"""Incident drills: scenarios as data, run against a live lab, scored and reported."""
