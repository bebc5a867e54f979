"""Plugins: the plugin manager factory, the typed hook facade, notification hookspecs, notifiers."""
