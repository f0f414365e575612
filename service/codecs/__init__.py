"""One decoder and one encoder per wire form, shared by every transport that speaks it."""
