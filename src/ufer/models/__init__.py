"""ufer.models"""
