"""MQTT: the sink with its lifecycle, the paho client, Home Assistant discovery (pure)."""
