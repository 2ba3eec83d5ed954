"""ufer.engine"""
