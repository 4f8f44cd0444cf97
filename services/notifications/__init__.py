"""notifications: tells customers what happened to their money (simulated delivery)."""
