"""payments: bill and card payments through a simulated external card processor."""
