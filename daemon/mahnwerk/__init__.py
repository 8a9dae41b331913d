"""mahnwerk: chases overdue invoices by email without straining customer relationships."""

__version__ = "0.1.0"
