"""The Show, Attend and Tell model (Xu et al. 2015), to read beside the paper in this order:
encoder.py (§3.1.1), attention.py (eq. 4-6; hard attention, eq. 8-9), decoder.py (§3.1.2: eq. 1-3,
the gate of §4.2.1, eq. 7, the initial state), captioner.py (the two together), loss.py (§4.2.1, and
§4.1's REINFORCE surrogate, eq. 10-12). Decoding's fast form of a trained model lives beside it, in
captioner/engine.py."""
