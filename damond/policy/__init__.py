"""Remote policy: documents, their merge and persistence, the MQTT channel, the operator tool."""
