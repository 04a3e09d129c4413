"""The sample store generator (``omnicast sample``, docs/SAMPLE_DATA.md): a made-up coffee & food shop in the
formats omnicast reads, with planted dirt and a manifest of what a correct reader must find.

:func:`write_sample` runs the stages of ``sample/store.py``: the catalogue (``catalogue``, ``products``), the people
(``people``), their orders (``orders``, ``customers``, ``orders_export``), the CRM (``crm``), GA4 events
(``events``), the dirt (``dirt``) and ``manifest.json`` (``manifest``). The demo's simulated responses to what it
sent are ``sample.responses.simulate_responses`` (imported on its own: it needs the database models).
"""

from sample.manifest import GENERATOR_VERSION
from sample.store import write_sample

__all__ = ["GENERATOR_VERSION", "write_sample"]
