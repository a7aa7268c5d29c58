"""The after-sales domain used by the Rasa custom actions: policies per product category,
orders, cases, what the bot understands and says, and the forms. Importable from the Rasa
venv: only the standard library, PyYAML and the gateway's pure `bot/i18n.py` (the one
language detector and time formatter of the product).
"""
