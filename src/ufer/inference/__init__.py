"""ufer.inference"""
