"""Remote consoles: a shell on a device through its agent's own outbound connection.

``sessions`` keeps the sessions in the database (the device's annotation and one row each),
``bridge`` carries a session's frames between the user API process that holds the user's
WebSocket and the agent API process that holds the device's gRPC stream, ``websocket`` is the
user's end (``GET /ws/v1/devices/{name}/console``). docs/api.md, "Remote console".
"""
