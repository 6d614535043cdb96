"""pokerdaq.io"""
