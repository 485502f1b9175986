"""The API's routes, one blueprint per resource."""

from __future__ import annotations

from certwatch.http.routes.alerts import alerts
from certwatch.http.routes.brands import brands
from certwatch.http.routes.certs import certs
from certwatch.http.routes.domains import domains
from certwatch.http.routes.health import health
from certwatch.http.routes.keys import keys
from certwatch.http.routes.rules import rules

__all__ = ["BLUEPRINTS"]

BLUEPRINTS = (health, domains, certs, keys, rules, brands, alerts)
