"""The four forms of the after-sales flows, one module each; `FORMS` in the order Rasa's
domain lists them. Their shared mechanics (read the whole message, fill what it says, ask
what is missing) are in `flows/forms/base.py`."""

from flows.forms.base import FormLogic
from flows.forms.complaint import ComplaintForm
from flows.forms.exchange import ExchangeForm
from flows.forms.progress import ProgressForm
from flows.forms.returns import ReturnForm

FORMS: tuple[type[FormLogic], ...] = (ReturnForm, ExchangeForm, ComplaintForm, ProgressForm)

__all__ = ["FORMS", "FormLogic", "ReturnForm", "ExchangeForm", "ComplaintForm", "ProgressForm"]
