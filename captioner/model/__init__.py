"""The Show, Attend and Tell model: encoder, attention, decoder, loss."""
