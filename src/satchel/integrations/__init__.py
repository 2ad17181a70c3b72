"""Framework integrations, each behind its extra: ``satchel[flask]``, ``satchel[fastapi]``,
``satchel[django]``. Importing satchel imports none of them."""
