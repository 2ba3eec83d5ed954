"""ufer.cli"""
