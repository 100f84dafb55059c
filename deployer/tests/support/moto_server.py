"""moto_server, with one gap of moto 5.2 closed: executing a CREATE change set.

The deployer creates every stack through a CREATE change set (`up` executes the change set it
showed). moto executes one without what its CreateStack does: the stack's outputs are never
computed, its exports never registered, and its template is parsed without the other stacks'
exports, so a stack that imports from it (the cluster from the network) cannot be created.
Here a CREATE change set is executed as moto's CreateStack would create the stack, with the
change set's template and parameters; UPDATE change sets are moto's own.

Run as moto_server is: `python3 moto_server.py -H 127.0.0.1 -p <port>`.
"""

import sys

from moto.cloudformation.models import CloudFormationBackend
from moto.server import main

moto_execute_change_set = CloudFormationBackend.execute_change_set


def execute_change_set(self, change_set_name, stack_name=None):
    change_set = self.describe_change_set(change_set_name)
    if change_set.change_set_type != "CREATE":
        return moto_execute_change_set(self, change_set_name, stack_name)
    # The empty REVIEW_IN_PROGRESS stack the change set made gives way to the real one.
    review = self.stacks.pop(change_set.stack_id)
    stack = self.create_stack(
        name=review.name,
        template=change_set.template,
        parameters=change_set.parameters,
        notification_arns=change_set.notification_arns,
        tags=change_set.tags,
        role_arn=change_set.role_arn,
    )
    change_set.stack_id = stack.stack_id
    change_set.execution_status = "EXECUTE_COMPLETE"


CloudFormationBackend.execute_change_set = execute_change_set

if __name__ == "__main__":
    sys.exit(main())
