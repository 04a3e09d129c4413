"""``omnicast serve``: one-click unsubscribe, the preference centre, tracked links and provider webhooks."""
