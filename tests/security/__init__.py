"""The attack suite (issue 11): each module attacks one defence, against a real
``widget serve`` where the defence lives in the server, and fails when it is removed."""
