"""ufer.losses"""
