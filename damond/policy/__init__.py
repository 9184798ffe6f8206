"""Remote policy: documents, the decision on each, merging and persistence,
the MQTT channel, the operator tool."""
