"""One module per manage.py command; each calls the feature it runs."""
