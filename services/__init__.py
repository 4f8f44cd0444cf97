"""The banking microservices; each subpackage is one service with its own database."""
