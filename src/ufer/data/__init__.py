"""ufer.data"""
