"""Contains all the data models used in inputs/outputs"""

from .execution import Execution
from .execution_context import ExecutionContext
from .execution_context_context_json import ExecutionContextContextJson
from .execution_context_json import ExecutionContextJson
from .execution_links import ExecutionLinks
from .execution_step import ExecutionStep
from .execution_step_context import ExecutionStepContext
from .execution_step_context_context_json import ExecutionStepContextContextJson
from .execution_step_context_json import ExecutionStepContextJson
from .execution_step_links import ExecutionStepLinks
from .flow import Flow
from .flow_definition_json import FlowDefinitionJson
from .flow_links import FlowLinks
from .list_execution_response import ListExecutionResponse
from .list_execution_step_response import ListExecutionStepResponse
from .list_flow_response import ListFlowResponse
from .page_meta import PageMeta
from .studio_error import StudioError

__all__ = (
    "Execution",
    "ExecutionContext",
    "ExecutionContextContextJson",
    "ExecutionContextJson",
    "ExecutionLinks",
    "ExecutionStep",
    "ExecutionStepContext",
    "ExecutionStepContextContextJson",
    "ExecutionStepContextJson",
    "ExecutionStepLinks",
    "Flow",
    "FlowDefinitionJson",
    "FlowLinks",
    "ListExecutionResponse",
    "ListExecutionStepResponse",
    "ListFlowResponse",
    "PageMeta",
    "StudioError",
)
