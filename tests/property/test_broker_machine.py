"""The core engine under random clients and fault plans keeps BrokerStateMachine's invariants."""

from __future__ import annotations

from _property_budget import property_settings

from simamqp.stateful import BrokerStateMachine

TestBrokerStateMachine = BrokerStateMachine.TestCase
TestBrokerStateMachine.settings = property_settings(stateful_step_count=30)
