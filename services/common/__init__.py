"""What every banking service shares: app factory, data layer, peer client, money and errors."""
