"""The sample store generator (catalogue, people, orders, CRM, events, dirt, manifest)."""
