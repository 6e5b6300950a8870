"""gluetun's control server: the client, pushing our port, following its port."""
