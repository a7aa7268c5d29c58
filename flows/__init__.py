"""The after-sales domain used by the Rasa custom actions: policies per product category,
order look-up and cases. Importable from the Rasa venv: only the standard library and PyYAML.
"""
