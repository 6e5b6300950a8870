"""``python -m pia_mqtt`` runs the command-line interface."""

from pia_mqtt.cli import main

raise SystemExit(main())
