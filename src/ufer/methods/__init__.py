"""ufer.methods"""
