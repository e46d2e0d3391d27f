"""The API gateway: the one public entry point in front of the patients and analytics services."""
