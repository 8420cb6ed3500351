"""Detector backends behind one protocol (base.py); heavy libraries load only inside them."""
