"""The analyst dashboard: state classes (param, no panel) and views (panel Viewers)."""
