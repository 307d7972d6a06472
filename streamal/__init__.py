"""streamal."""
