"""ufer.data.adapters"""
