"""Real peers on loopback (SMTP server, HTTP stand-ins) that tests talk to."""
