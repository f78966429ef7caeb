"""The shared core of every roadside package: errors, configuration base, paths, MQTT settings and client,
topic contract, payloads, video decoding and the command-line root. It imports nothing of the other packages."""
