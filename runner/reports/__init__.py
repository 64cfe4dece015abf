"""Reports: what an experiment found, as tables, `report.md` and PNG figures."""
