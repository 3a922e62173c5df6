"""The truck link's one vocabulary: ISO 23725 message shapes (``wire``) and the MQTT topic
layout (``topics``). Telemetry, control and the simulator all speak it; it depends on no domain
app, so a truck-side tool can use it without the platform (docs/protocol.md)."""
