"""Example host page: a stand-in for Omnichannel (demos and QA)."""
