"""pokerdaq.trigger"""
