"""simamqp."""
