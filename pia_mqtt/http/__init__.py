"""The status endpoint: a page for people, Kubernetes probes, the state JSON and metrics.

Off unless ``HTTP_PORT`` is set. :mod:`~pia_mqtt.http.board` keeps what the engine
dispatched (the latest snapshot, the last few events, counters); :mod:`~pia_mqtt.http.page`,
:mod:`~pia_mqtt.http.metrics` and :mod:`~pia_mqtt.http.probes` turn a copy of it into text
(pure, no sockets); :mod:`~pia_mqtt.http.server` serves them from one thread.
"""
