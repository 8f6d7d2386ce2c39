"""Grades from evidence in InfluxDB: rubrics, measures, the evidence window, reports."""
